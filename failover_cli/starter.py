# ruff: noqa: E501  (the YAML text is data, copied verbatim from providers.example.yaml)
"""The commented starter configuration ``failover config init`` writes.

A copy of ``providers.example.yaml`` at the repository root (a test keeps the two in sync),
kept as a string so it ships inside the package.
"""

STARTER_YAML = """\
# failover configuration. Copy to ./providers.yaml, or run `failover config init`.
# Check it with `failover config validate`; see the effective chain with `failover config show`.

chain: default                # names the state this chain keeps (breakers, history); optional

providers:                    # tried in this order; the first is the primary
  - name: claude              # unique name, used in traces, status and --provider
    kind: anthropic           # anthropic | openai | ollama | gemini (openai = any OpenAI-compatible server)
    model: claude-sonnet-5-5  # the model this link asks for
    base_url: https://api.anthropic.com   # optional; each kind has a default
    api_key_env: ANTHROPIC_API_KEY        # the NAME of the environment variable holding the key (keys never live here)
    connect_timeout: 5        # seconds to connect (TCP and TLS)
    first_token_timeout: 10   # seconds to the first token (+1 s per 40,000 prompt characters; a non-streamed call also gets max_tokens/25 s); then fail over
    idle_timeout: 15          # longest silence between two stream events before the stream counts as stalled
    timeout: 300              # seconds per attempt, whole answer included (long enough for a long answer)
    priority: 1               # optional; equal priorities form a tier ordered by score
    cost: {input_per_mtok: 3.0, output_per_mtok: 15.0, cached_input_per_mtok: 0.3}   # USD per million tokens, optional
    # continuation: auto      # how a stream broken mid-answer is continued here: auto | prefill | instruct | restart
    # drop_params: [temperature]   # parameters never sent to this provider
    # capabilities: {tools: true, vision: true, json_schema: true, prefill: false}   # where the built-in table is wrong for this model
    # proxy: http://proxy.corp:3128   # else HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY from the environment
    # ca_bundle: /etc/ssl/certs/corp-ca.pem   # added to the OS trust store (also SSL_CERT_FILE / SSL_CERT_DIR)
    # headers: {HTTP-Referer: https://example.org}   # extra headers; a value ${VAR} is read from the environment

  - name: gpt
    kind: openai              # also OpenRouter, Groq, Together, vLLM, LM Studio, llama.cpp, Ollama's /v1
    model: gpt-5.4-mini
    api_key_env: OPENAI_API_KEY
    cost: {input_per_mtok: 0.25, output_per_mtok: 2.0}

  - name: llama
    kind: ollama              # native Ollama API, no key
    model: llama3.2
    base_url: http://localhost:11434
    first_token_timeout: 60   # local models can be slow to load
    cost: {input_per_mtok: 0, output_per_mtok: 0}

retry:
  attempts: 3                 # tries per provider for transient errors, the first included
  base_delay: 0.5             # seconds; backoff doubles per retry, with full jitter
  max_delay: 8                # cap on one backoff delay
  max_retry_after: 30         # a server asking to wait longer than this is failed over instead
  failover_retry_after: 2     # ...and longer than this, when another provider can answer now

breaker:
  failure_threshold: 3        # consecutive failures that open the breaker
  window: 60                  # seconds of history for the failure rate
  failure_rate: 0.5           # ...opens when this share of calls in the window failed
  min_requests: 10            # ...and at least this many calls were made
  cooldown: 30                # seconds open before a half-open probe
  cooldown_ratio: 0.25        # after a failed probe, open again for this share of the outage so far (at least cooldown)
  max_cooldown: 600           # ...up to this; auth/quota/unknown-model errors use it at once (until the key or URL changes)
  half_open_probes: 1         # probes admitted at once while half-open; other requests skip the provider
  slow_call_ms: null          # optional: a success slower than this counts as a failure
  cold_start_wait: 0.25       # with no history yet, failure_threshold requests try a provider first; others wait up to this for their verdict (0: off)

routing:
  strategy: priority          # priority: tiers by priority, ties by score | score: by score alone
  weights: {latency: 0.5, reliability: 0.4, cost: 0.1}   # how the score is made
  hedge_after_ms: null        # optional: start the next provider too if no first token by then

queue:
  max_wait: 60                # seconds a request waits when every provider is down
  max_size: 1000              # requests allowed to wait at once in one process

state:
  path: null                  # default: the user state dir (see `failover config path`)
  # url: redis://localhost:6379/0   # share breaker state across a fleet instead
  history: 500                # latency samples kept per provider

log:                          # the history of asks and chats (`failover logs`); `log: false` turns it off
  enabled: true
  path: null                  # default: history.db in the user data dir
  max_entries: 10000          # oldest entries are pruned beyond this...
  max_mb: 200                 # ...or this size

budget:                       # optional spend limits in USD (UTC days and months), checked on every hop
  daily_usd: null
  monthly_usd: null
  # providers: {claude: {daily_usd: 5}}   # a provider's own limit
  # A provider without cost: is skipped while a limit covers it: its spend cannot be known.

# models:                     # `failover serve`: a request's model name choosing a chain
#   fast: [gpt, llama]

serve:                        # `failover serve`, the gateway (pip install 'failover[serve]')
  host: 127.0.0.1             # any other address needs gateway keys
  port: 8400
  keys_env: null              # optional: an environment variable holding gateway keys
  unknown_model: default      # default: unknown model names go to the whole chain | reject
  log: false                  # record gateway requests in the history too
"""
