"""Renderers: a served answer as the JSON body or SSE chunks of each endpoint."""
