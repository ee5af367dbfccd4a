"""Text in and out: tokenizers, tokens shown as text, the chat template."""
