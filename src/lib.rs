//! kandle: Keras-style models on candle.
