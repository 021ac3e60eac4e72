-- probe_neuron_mean_diff(run_ids, layers, value): intermediate. probe_mean_diff of kind 'neuron' (k-sparse probing
-- of MLP neurons over whole documents): per (language, layer, neuron) with rows in the language, the mean of x
-- (probe_doc_neurons) over the language's documents minus over the other languages' documents, ranked per
-- language. The probe keeps each language's first k.
-- inputs: probe_mean_diff
-- params: run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer); value 'count' | 'mean' | 'binary'
CREATE OR REPLACE MACRO probe_neuron_mean_diff(run_ids, layers := NULL, value := 'count') AS TABLE
SELECT * FROM probe_mean_diff(run_ids, layers := layers, value := value, kind := 'neuron');
