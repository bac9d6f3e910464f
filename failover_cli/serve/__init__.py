"""HTTP gateway: serve OpenAI- and Anthropic-compatible APIs over the failover router."""
