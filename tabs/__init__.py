"""One module (or package) per tab. Each exposes build(...), which opens its own gr.Tab and wires its events.
What the tabs share lives in tabs.kit; a tab never imports another tab."""
