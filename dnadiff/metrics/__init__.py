"""What dnadiff measures: held-out likelihoods (with standard errors), classification metrics, and
the quality of generated sequences (k-mers, GC, diversity, memorisation, motifs, model oracles)."""
