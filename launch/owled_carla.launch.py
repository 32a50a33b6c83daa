"""Start owled_node on the CARLA ROS bridge: config/owled.yaml, then config/carla.yaml.

    ros2 launch owled_ros owled_carla.launch.py role_name:=hero model:=/path/to/pruned

The node runs on simulation time (/clock). carla.yaml names the ego_vehicle topics;
role_name remaps them to another vehicle's.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("owled_ros")
    role = LaunchConfiguration("role_name")
    return LaunchDescription([
        DeclareLaunchArgument("role_name", default_value="ego_vehicle", description="carla-ros-bridge vehicle role"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its outputs"),
        DeclareLaunchArgument("model", default_value="default", description="model directory or 'default'"),
        Node(
            package="owled_ros",
            executable="owled_node",
            name="owled_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[
                os.path.join(share, "config", "owled.yaml"),
                os.path.join(share, "config", "carla.yaml"),
                {"model": LaunchConfiguration("model"), "use_sim_time": True},
            ],
            remappings=[
                ("/carla/ego_vehicle/rgb_front/image", ["/carla/", role, "/rgb_front/image"]),
                ("/carla/ego_vehicle/odometry", ["/carla/", role, "/odometry"]),
            ],
            output="screen",
        ),
    ])
