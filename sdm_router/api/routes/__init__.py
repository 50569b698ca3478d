"""HTTP routes: thin handlers that parse, call the pipeline and render."""
