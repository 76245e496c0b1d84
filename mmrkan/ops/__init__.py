"""KAN ops: group-rational activation (KAT) and KAN convolution (RKAN), with their modules."""
from .group_rational import GroupRational, group_rational
from .kan_conv import KANConv2d, kan_conv2d

__all__ = ['group_rational', 'kan_conv2d', 'GroupRational', 'KANConv2d']
