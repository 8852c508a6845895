"""The shared core of every learner: protocols (:mod:`rltransfer.core.types`) and the one
home of component freezing and (de)serialisation
(:mod:`rltransfer.core.checkpoint_components`)."""
