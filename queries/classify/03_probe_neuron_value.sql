-- probe_neuron_value(value, n, act_sum, n_tokens): expression macro. The per-document value of an MLP neuron the
-- neuron probe (neuron-probe) reads, from neuron_docs: value 'count' (the default) = ln(1 + n), n = the tokens
-- of the document where the neuron's mlp.act_fn output is > 0 (BOS included); 'mean' = act_sum / n_tokens, the
-- sum of those outputs over the document's tokens (its mean positive part); 'binary' = 1 when n > 0 (nearly
-- always, for dense neurons). A neuron with no output > 0 in the document is 0.
-- inputs: none
-- params: value 'count' | 'mean' | 'binary'; n INTEGER; act_sum FLOAT; n_tokens INTEGER
CREATE OR REPLACE MACRO probe_neuron_value(value, n, act_sum, n_tokens) AS
    CASE value WHEN 'count' THEN ln(1 + n::DOUBLE) WHEN 'mean' THEN act_sum::DOUBLE / n_tokens
               WHEN 'binary' THEN 1.0::DOUBLE END;
