"""Cloud instance groups behind one small async protocol (:mod:`controller.providers.base`)."""
