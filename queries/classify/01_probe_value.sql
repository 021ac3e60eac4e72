-- probe_value(value, n, act_max): expression macro. The per-document value of a unit the sparse probes
-- (sae-probe) read: value 'binary' (the default) = 1 when the unit fired in the document; 'count' = ln(1 + n),
-- n = the tokens of the document where it fired (BOS included); 'max' = its largest activation in the document.
-- A unit that never fired in the document is 0.
-- inputs: none
-- params: value 'binary' | 'count' | 'max'; n BIGINT; act_max FLOAT
CREATE OR REPLACE MACRO probe_value(value, n, act_max) AS
    CASE value WHEN 'binary' THEN 1.0::DOUBLE WHEN 'count' THEN ln(1 + n::DOUBLE) WHEN 'max' THEN act_max::DOUBLE END;
