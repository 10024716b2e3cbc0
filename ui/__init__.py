"""The app's tabs: one module each, laying out components and wiring them to `gpt`."""
