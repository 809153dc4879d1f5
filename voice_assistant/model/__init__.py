"""Audio-language model backends behind one streaming protocol."""
