"""speechbrain-moco: speaker embeddings learned without labels by Momentum Contrast."""
