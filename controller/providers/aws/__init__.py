"""The AWS provider: ``AWSMachinePool`` on EC2 Auto Scaling groups and launch templates.

- :mod:`~controller.providers.aws.client` — one region's aiobotocore clients: retries with
  jitter, typed errors, call metrics, nothing secret in logs;
- :mod:`~controller.providers.aws.describe` — batched, cached ``DescribeAutoScalingGroups``
  (one call serves every pool of the region) and ``DescribeInstances``;
- :mod:`~controller.providers.aws.launchtemplate` — a launch template version only when the
  data changed, old versions pruned;
- :mod:`~controller.providers.aws.provider` — the
  :class:`~controller.providers.base.InstanceGroupProvider` for Auto Scaling groups;
- :mod:`~controller.providers.aws.adapter` — ``AWSMachinePool`` → ``GroupSpec``.

``app.py`` registers the adapter and provider as one kind of the registry
(:mod:`controller.providers.registry`); the generic infrastructure controller
(:mod:`controller.infrastructure.setup`) reconciles it.
"""
