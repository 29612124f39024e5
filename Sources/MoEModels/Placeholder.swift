enum ModelsPlaceholder {}
