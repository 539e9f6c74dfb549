"""The torch networks of llmrec's trained recommenders and tokenisers, one module per network.

Every module here imports torch at its top, so nothing imports them at import time: a model
(:mod:`llmrec.models.sasrec`, :mod:`llmrec.paradigms.tokens.generative`, ...) imports its network
inside ``fit`` and ``load``, and ``import llmrec`` stays free of torch (the ``torch`` extra is
optional). A network reads its hyper-parameters from any object with the fields it names (a
:class:`typing.Protocol`; the models pass their pydantic configs), so this package imports no
model module and no model module imports it at its top.

Modules:
    table: :class:`~llmrec.nets.table.ComputedTable`, item tables computed from parameters.
    sasrec: the causal transformer of SASRec (and of LM-SASRec and token-SASRec).
    bpr: BPR-MF's user and item factors and its pairwise loss.
    text_table: LM-SASRec's item table (adaptor over whitened text vectors) and its network.
    token_table: token-SASRec's item table (summed semantic-ID code embeddings).
    tiger: TIGER's decoder-only transformer with a key/value cache.
    rqvae: the RQ-VAE autoencoder and its training.
"""
