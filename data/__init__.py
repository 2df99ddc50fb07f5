"""Published data shipped with nasedu (installed as ``nasedu._data``): genotypes and
paper-reported numbers, each with its source. Only JSON lives here."""
