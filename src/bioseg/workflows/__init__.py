"""Commands that combine the layers below: evaluate, tune-instances, sweep, compare, crop, init-config,
lr-find and augment-preview. They share one walk over a labelled split (:mod:`.split_predictions`)."""
