"""The SQLite spool: every verified request, durably, before the provider gets its 2xx."""
