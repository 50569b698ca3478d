"""The OpenAI-compatible routes: thin handlers that parse, call one serving method and render."""
