"""Model clients: embedded llama.cpp, OpenAI-compatible and Anthropic Messages over HTTP,
and the MCP client. Each translates its library's errors into ``ModelUnavailable``."""
