import CBLAS
enum TensorPlaceholder {}
