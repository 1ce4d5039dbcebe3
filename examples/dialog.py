"""A two-step dialog: /order asks for a pizza, then an address, then confirms.

The dialog's step lives in the bot's state database, so a worker killed between the two answers
picks the conversation up where it was. An unanswered question expires after 5 minutes.
"""

from botvisor import Bot, filters

bot = Bot("dialog")
TIMEOUT = 300


@bot.command("order")
async def begin(ctx):
    ctx.dialog.goto("pizza", timeout=TIMEOUT)
    await ctx.reply("Which pizza would you like?")


@bot.command("cancel", filter=filters.in_dialog)
async def cancel(ctx):
    ctx.dialog.end()
    await ctx.reply("Order cancelled.")


@bot.on_message(filters.state("pizza") & filters.text)
async def pizza(ctx):
    ctx.dialog.goto("address", timeout=TIMEOUT, pizza=ctx.text.strip())
    await ctx.reply("And the delivery address?")


@bot.on_message(filters.state("address") & filters.text)
async def address(ctx):
    order = ctx.dialog.end()
    orders = ctx.state.user.get("orders", [])
    ctx.state.user["orders"] = orders + [{"pizza": order["pizza"], "address": ctx.text.strip()}]
    await ctx.reply(f"One {order['pizza']} to {ctx.text.strip()}: on its way!")
