"""The OpenAI-compatible surface: client wire models, routes and the renderers of each protocol."""
