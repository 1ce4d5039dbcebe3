"""The bench's trivial app: answers every incoming message (bench/apps.py)."""

from botvisor import Bot

bot = Bot("bench")


@bot.on_message()
async def answer(ctx):
    await ctx.reply("ok")
