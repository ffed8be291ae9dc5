"""PyGObject callbacks (python3-gi): GLib.timeout_add driving a MainLoop."""

from gi.repository import GLib

loop = GLib.MainLoop()
ticks = []


def tick(name):
    ticks.append(name)
    if len(ticks) == 5:
        loop.quit()
        return False
    return True


GLib.timeout_add(1, tick, "t")
loop.run()
print("VAL ticks", *ticks)
print("DONE")
