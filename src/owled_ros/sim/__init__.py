"""Closed-loop simulation: a MetaDrive world (own process, own venv), our controller, scoring.

Nothing here imports rclpy; the ROS side (topics, bag) is owled_ros/ros/sim_bridge.py.
world.py runs inside .venv-sim and imports only the standard library and MetaDrive.
"""
