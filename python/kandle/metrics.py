"""``kandle.metrics``: metric identifiers by their Keras names, for ``compile(metrics=[...])``."""


def _named(name):
    def metric(y_true, y_pred):
        raise NotImplementedError(
            f"kandle computes '{name}' inside fit/evaluate; calling it directly is not supported yet")

    metric.__name__ = name
    return metric


accuracy = _named("accuracy")
categorical_accuracy = _named("categorical_accuracy")
sparse_categorical_accuracy = _named("sparse_categorical_accuracy")
binary_accuracy = _named("binary_accuracy")
top_k_categorical_accuracy = _named("top_k_categorical_accuracy")
mean_squared_error = mse = _named("mean_squared_error")
mean_absolute_error = mae = _named("mean_absolute_error")
