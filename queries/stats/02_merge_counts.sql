-- merge_counts(tok_count, doc_count, act_sum, act_max, act_min): expression macro, an aggregate. How the count
-- aggregates of several runs (or documents) merge into one: sums of tok_count / doc_count / act_sum, max of
-- act_max, min of act_min, as a struct; `unnest(merge_counts(...))` in a GROUP BY gives the five columns.
-- inputs: none
-- params: the five aggregate columns of feature_counts / neuron_counts / stat_units
CREATE OR REPLACE MACRO merge_counts(tok_count, doc_count, act_sum, act_max, act_min) AS {
    tok_count: sum(tok_count)::BIGINT,
    doc_count: sum(doc_count)::BIGINT,
    act_sum:   sum(act_sum),
    act_max:   max(act_max),
    act_min:   min(act_min)
};
