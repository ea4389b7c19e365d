"""The functional core: conversations as pure transitions, validators, and their texts."""
