"""Paper-style experiments on dnadiff models.

- :mod:`dnadiff.experiments.steps`: how many sampling steps a correct sequence needs (token vs
  sequence error on checkable DNA languages, the exact oracle and trained MDLM models);
- :mod:`dnadiff.experiments.steps_genome`: the same step sweep on the real-genome model
  (generative perplexity, k-mer JS).
"""
