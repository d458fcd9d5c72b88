"""Pure tensor functions (no parameters): the cross-frame kNN and video point helpers."""
