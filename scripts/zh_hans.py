"""Write a zh-Hans catalog file from its zh-Hant twin (a maintainer's tool; needs ``pip install opencc``).

    python scripts/zh_hans.py AREA [AREA...]

OpenCC (tw2s) converts the characters, a short table the course's terms (歸一化, 信息, 调用, 位元 → 位 …); then the
table terms are swapped, as the two conventions differ: a row is 列 in Taiwan and 行 on the mainland, a column 欄
and 列. Words where 列 does not mean a row (排列, 序列, 列表, 列出) are kept. Corner quotes 「」 become “”. Review the
result before committing.
"""

import json
import sys
from pathlib import Path

import opencc

FOLDER = Path(__file__).resolve().parents[1] / "tracer" / "i18n"
KEEP = ("排列", "序列", "列表", "列出")
VERBATIM = ("報告", "「請」")  # tokens of the toy vocabulary: the model's text, not the interface's
TERMS = {"程式碼": "代码", "擷取": "捕获", "紀錄": "记录", "機率": "概率", "開啟": "打开", "快取": "缓存", "追蹤檔": "追踪文件", "溢位": "溢出",
         "點選": "点击", "儲存": "存储", "資料夾": "文件夹", "資料型別": "数据类型", "純量": "标量", "正規化": "归一化", "資訊": "信息", "程式": "程序",
         "記憶體": "内存", "檔案": "文件", "預設": "默认", "介面": "界面", "執行": "运行", "軟體": "软件", "啟用函數": "激活函数", "呼叫": "调用",
         "搜尋": "搜索", "滑桿": "滑块", "視窗": "窗口", "上傳": "上传", "伺服器": "服务器", "物件": "对象", "字串": "字符串", "位元組": "字节",
         "解析度": "分辨率", "游標": "光标", "支援": "支持", "品質": "质量", "存取": "访问", "讀取": "读取", "選單": "菜单", "頁面": "页面",
         "預覽": "预览", "數值": "数值", "向量": "向量", "位元": "位", "字元": "字符", "磁碟": "磁盘", "影像": "图像",
         "資料": "数据", "載入": "加载"}
QUOTES = {"「": "“", "」": "”", "『": "‘", "』": "’"}  # Taiwan's corner quotes, the mainland's curly ones


def convert(text: str, cc: "opencc.OpenCC") -> str:
    for k, word in enumerate(VERBATIM):
        text = text.replace(word, f"⟨{k}⟩")
    for k, word in enumerate(KEEP):
        text = text.replace(word, f"⟦{k}⟧")
    for hant, hans in TERMS.items():
        text = text.replace(hant, hans)
    text = cc.convert(text.replace("列", "⟪").replace("欄", "⟫"))
    text = text.replace("⟪", "行").replace("⟫", "列")
    for hant, hans in QUOTES.items():
        text = text.replace(hant, hans)
    for k, word in enumerate(KEEP):
        text = text.replace(f"⟦{k}⟧", cc.convert(word))
    for k, word in enumerate(VERBATIM):
        text = text.replace(f"⟨{k}⟩", word)
    return text


def main() -> None:
    cc = opencc.OpenCC("tw2s")
    for area in sys.argv[1:]:
        source = json.loads((FOLDER / "zh-Hant" / f"{area}.json").read_text(encoding="utf-8"))
        out = {key: convert(value, cc) for key, value in source.items()}
        (FOLDER / "zh-Hans" / f"{area}.json").write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n",
                                                          encoding="utf-8")


if __name__ == "__main__":
    main()
