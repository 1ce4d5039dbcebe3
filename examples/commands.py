"""A command bot: /help, /echo TEXT, /sum 1 2 3, and "I'd like 3 coffees" read with a regex."""

from botvisor import Bot, filters

bot = Bot("commands")


@bot.command("help", "start")
async def help_(ctx):
    greeting = ctx.config.get("greeting", "Hello")
    await ctx.reply(f"{greeting}! Commands: /echo TEXT, /sum NUMBERS...")


@bot.command("echo")
async def echo(ctx):
    await ctx.reply(ctx.command.rest or "(nothing to echo)")


@bot.command("sum")
async def sum_(ctx):
    try:
        total = sum(float(arg) for arg in ctx.command.args)
    except ValueError:
        await ctx.reply("usage: /sum 1 2 3")
        return
    await ctx.reply(f"{total:g}")


@bot.on_message(filters.regex(r"(?P<count>\d+) coffees?") & filters.private)
async def coffee(ctx):
    await ctx.reply(f"{int(ctx.match['count'])} coffee(s) coming up")


@bot.on_message(filters.text & ~filters.group)
async def unknown(ctx):
    if ctx.text.startswith(("/", "!")):
        await ctx.reply("unknown command; try /help")
