"""owled_ros: OWL-pruned driving vision-language model on a ROS 2 vehicle computer."""

__version__ = "0.1.0"
