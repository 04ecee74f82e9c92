"""One module per tab. Each exposes build(...), which opens its own gr.Tab and wires its events."""
