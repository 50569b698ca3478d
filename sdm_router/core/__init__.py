"""Pure types shared by every layer; no web framework, torch or httpx here."""
