"""Corpus preparation scripts: audio folders -> manifest CSVs (see ``speechbrain_moco.manifest``)."""
