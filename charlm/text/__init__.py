"""Text to token ids: streamed reading (reader, with the line reader `iter_lines`), the tokenizer,
the vocabulary, provisional token ids in constant memory (tokenids) and the token cache."""
