"""The imperative shell: Telegram, the terminal, the CLI, and the composition root."""
