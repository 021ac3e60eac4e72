-- diffmean_means: per-language mean MLP outputs written by `langfeat identify --algorithm diffmean` (schema in
-- db/tables.sql), plus the vector-set name.
-- inputs: results/diffmean_means/name=*/*.parquet (source)
CREATE OR REPLACE VIEW diffmean_means AS
SELECT *
FROM {source:diffmean_means};
