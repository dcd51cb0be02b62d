print("excel-creator")
