-- identify_defaults(): expression macro. The default parameters of SAE-LAPE and LAPE (the paper's identify.py
-- flags), the one place they are written: the identify macros default to them and langfeat.identify.Params
-- reads them.
-- inputs: none
-- params: none
CREATE OR REPLACE MACRO identify_defaults() AS {
    ratio:                0.8::DOUBLE,   -- --topk-threshold-ratio
    example_rate:         0.98::DOUBLE,
    hfl_rate:             0.1::DOUBLE,
    filter_rate:          0.95::DOUBLE,
    top_rate:             0.01::DOUBLE,
    activation_bar_ratio: 0.95::DOUBLE,
    shared_count:         2::INTEGER
};
