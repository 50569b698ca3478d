"""The HTTP layer: ``create_app`` (app.py), the OpenAI surface (openai/), the request edge
(edge/), operator endpoints (operations/) and running servers (serve/)."""
