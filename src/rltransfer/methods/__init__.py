"""Transfer methods that work on any agent: weight transfer and freezing by component name
(:mod:`rltransfer.methods.weight_transfer`)."""
