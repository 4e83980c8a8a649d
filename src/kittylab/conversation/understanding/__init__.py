"""Text → intent: the lab vocabulary, the grammar stage (hassil templates with fuzzy
correction), conversation context and the local-model stage's port. Pure: no I/O."""
