"""``python -m controller.providers.aws._moto_main``: moto's server with one moto bug fixed.

moto 5 stores the user data of ``CreateLaunchTemplateVersion`` as a plain string (only
``CreateLaunchTemplate`` wraps it), and an Auto Scaling group launching from such a version
then fails with an assertion inside moto. Real EC2 has no such problem, so the emulator
process (never the controller) wraps the value when it is read. Everything else is moto's
own ``moto.server.main``. Arguments are moto_server's.
"""

from __future__ import annotations

from typing import Any


def _fix_launch_template_user_data() -> None:
    from moto.ec2.models.launch_templates import LaunchTemplateVersion
    from moto.ec2.utils import parse_user_data

    def user_data(self: Any) -> Any:
        value = self.data.get("UserData")
        if isinstance(value, str):
            value = self.data["UserData"] = parse_user_data(value)
        return value

    setattr(LaunchTemplateVersion, "user_data", property(user_data))  # noqa: B010


def main() -> None:
    from moto.server import main as moto_main

    _fix_launch_template_user_data()
    moto_main()


if __name__ == "__main__":
    main()
