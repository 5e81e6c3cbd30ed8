"""The HTTP edge: POST /hooks/{source_id} → verify → spool → 2xx."""
