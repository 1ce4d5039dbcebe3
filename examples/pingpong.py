"""The smallest bot: answers "pong" to "ping" (any case), and counts how often it did."""

from botvisor import Bot, filters

bot = Bot("pingpong")


@bot.on_message(filters.equals("ping"))
def pong(ctx):
    ctx.state.bot["pongs"] = ctx.state.bot.get("pongs", 0) + 1
    ctx.reply("pong")
