//! MeasureVAE in candle (in progress).
