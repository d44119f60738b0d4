"""streamrt.apps.examples: runnable integrations of streamrt.client (`python -m streamrt.apps.examples.NAME`).

- `alert`: watch a source in understand mode and fire an action when the commentary mentions an event.
"""
