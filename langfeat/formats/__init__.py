"""Files in the paper's formats: count files, LAPE .pt results and explanation imports."""
